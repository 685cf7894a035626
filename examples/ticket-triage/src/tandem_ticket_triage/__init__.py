"""An example Tandem plugin: ticket triage."""
