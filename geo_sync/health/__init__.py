"""Health of a site: `geo-sync check` (one line per check, Nagios exit codes) and the
verdict of `geo-sync status`. ``result`` is role-free; ``primary`` and ``secondary``
each look only at their own site's modules."""
