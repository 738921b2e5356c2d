"""Demo stories: `ops demo <story>` plays one against the running local stack."""
