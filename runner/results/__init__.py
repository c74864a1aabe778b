"""Result documents as typed records: what `runner bench` writes and `runner report` reads.

Both sides share these records, so a field is named and typed in one place: the bench builds
them, `to_json` writes the document, `from_json` reads it back checking every field.
"""
