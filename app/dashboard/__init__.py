"""The operator's dashboard: an HTML/JS shell at `/dashboard` and the JSON routes its pages poll."""
