"""rkpipe's built-in stages. A stage that graphs name ``X`` lives at ``stages/X.py`` or
``stages/X/`` (sinks under ``stages/sinks/``), and registers under that short name through the
``rkpipe.stages`` entry points in ``pyproject.toml``."""
