"""Review threads: drafts wait for a person to approve, reject or send back with feedback."""
