"""Operating a dotwist server: inspect and change its objects, back it up, restore it.

``dotwist.admin.inspector`` does the work; ``dotwist.admin.http`` serves it on the admin endpoint
of a running server (``--admin``); ``dotwist.admin.cli`` is the ``dotwist-admin`` command (also
``python -m dotwist.admin``), which talks to a running server over that endpoint, or works on a
stopped server's data directory; ``dotwist.admin.backup`` takes backups and restores them.
"""
