"""Helpers the tests share: the front's upstreams over real sockets and their faults, real
service processes, and the swarm deployment the Docker tests run against."""
