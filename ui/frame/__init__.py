"""The frame every page runs in: session state, access, the text catalog, layout helpers, setting widgets and
the models a session caches. Nothing here draws a view."""
