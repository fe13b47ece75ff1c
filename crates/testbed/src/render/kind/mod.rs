//! Kubernetes objects for the kind environment: Ingress with each controller's annotations, Service, Deployment.
