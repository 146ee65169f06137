"""The shop's console: one page showing, live and on one time axis, the swarm's nodes and
tasks, the requests a small probe sends through the shop's entry point, and what the swarm
and the autoscaler did."""
