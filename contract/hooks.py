"""Schemathesis hooks for the contract run (loaded through SCHEMATHESIS_HOOKS=hooks).

The restore route takes a backup file, NDJSON, which schemathesis has no serializer for: the
drawn body (a string, as the schema says) is sent as text.
"""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
