"""The one shared database module: engine, tables, migrations, integrity and backups."""
