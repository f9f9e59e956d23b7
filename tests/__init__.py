"""The test suite: unit tests mirror the package layout; interop/ runs real clients against twistd -n pacs."""
