"""The shop's autoscaler: scales labelled swarm services with their request rate, using the
Kubernetes HorizontalPodAutoscaler's algorithm (autoscaler.policy) on Prometheus' rates."""
