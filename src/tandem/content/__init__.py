"""The content pipeline: drafts from the content-writer agent, reviewed, then published."""
