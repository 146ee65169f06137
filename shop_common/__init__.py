"""What the shop's three services share: settings base, logs, middleware, errors, serving."""
