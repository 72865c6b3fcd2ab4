"""Images in and out: registries, auth, pull and push, save/load archives, import."""
