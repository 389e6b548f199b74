"""fleet: the field technicians' command-line tool. Talks to the cloud over HTTP only."""
