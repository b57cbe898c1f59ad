"""The embedded dev stack behind `leadpipe dev`: broker, Redis, services, demo traffic."""
