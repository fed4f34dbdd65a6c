"""The mirror server, `geo-sync secondary serve`: CI runners near a secondary clone
and download there, never staler than the primary.

URL layout (it follows the storage layout, so a mirror path is a storage path):

- ``/git/<path>.git/info/refs?service=git-upload-pack`` and
  ``/git/<path>.git/git-upload-pack``: git smart HTTP (``<path>`` without ``.git``
  is taken too); pushes are refused, naming the primary's URL.
- ``/artifacts/<path>`` and ``/job_logs/<path>``: GET and HEAD, with Range.
- ``/-/health``: no authentication; 200, or 503 with the reasons.
"""
