"""How the schema's columns are written: ProxyOS's types, defaults and units (see shared
SCHEMA.md), and the one MetaData every table is on."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, Text, TypeDecorator, text

metadata = MetaData()


def _default(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, str):
        return text("'" + value.replace("'", "''") + "'")
    return text(str(value))


def c(
    name: str,
    type_: type = Text,
    *,
    pk: bool = False,
    nn: bool = False,
    unique: bool = False,
    default: object = None,
    fk: str | None = None,
) -> Column:
    """A column the way SCHEMA.md writes it: type, PK, NN, UQ, default."""
    args = [ForeignKey(fk, ondelete="CASCADE")] if fk else []
    return Column(
        name,
        type_,
        *args,
        primary_key=pk,
        nullable=not (nn or pk),
        unique=unique or None,
        server_default=_default(default),
    )


class INT(TypeDecorator):
    """ProxyOS's INTEGER (also for ts_s and bool columns). SQLite's INTEGER is 64-bit;
    PostgreSQL's is not, so there it is BIGINT (`bucket_ts` is in milliseconds)."""

    impl = Integer
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(BigInteger() if dialect.name == "postgresql" else Integer())


# may pass 2^31: BIGINT on PostgreSQL (SQLite's INTEGER is 64-bit already)
BIG = BigInteger().with_variant(INT(), "sqlite")
