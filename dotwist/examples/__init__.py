"""Runnable example apps. Each module binds ``app``; run one with ``twistd -n dotwist --app``."""
