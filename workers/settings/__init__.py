"""Each area's settings, one recipe: `workers/settings/<area>.py` has `load(env)`, which
reads and checks that area's environment variables (ConfigError: one line naming the
variable and what it accepts) and returns the area's typed settings, whose defaults are
the dataclass's own (`tasks/<area>/settings.py` and the like). Jobs get them parsed once
per process: `ctx.settings.area(load)`."""
