"""Disaster recovery: drills, promotion of a secondary, fencing, repointing.

Runs on a secondary (its tracking DB and mirror) and talks to the primary's Geo API
when it answers. ``rpo`` measures what would be lost now, ``promote`` makes this site
the primary (planned: maintenance on, drain, fence; forced: with what it has),
``repoint`` moves another secondary to the new primary, ``drill`` rehearses it.
"""
