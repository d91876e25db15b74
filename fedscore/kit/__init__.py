"""What every protocol needs, once: options, typed tables, feature encoding, model files, the peer channel."""
