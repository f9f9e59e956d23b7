"""Index schema from dicom.sql, upserts, group-commit writer, DB threads."""
