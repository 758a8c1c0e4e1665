"""``rkpipe deploy``: a systemd unit and a Dockerfile to run a graph as a service."""
