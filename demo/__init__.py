"""The demo organisation's data files and the stories `ops demo` plays."""
