"""Command-line tools of pycorosync, with the flags and output of corosync's own tools."""
