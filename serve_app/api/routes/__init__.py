"""One router per resource; `serve_app.api.create_api` mounts them."""
