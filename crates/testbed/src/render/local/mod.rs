//! Native data-plane configuration for the local environment, written the way each controller writes it.
