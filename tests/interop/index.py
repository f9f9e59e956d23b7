"""Read a server's SQLite index directly (stdlib sqlite3), for assertions."""

import sqlite3

BOOKKEEPING = {"AccessTime", "qTimeStamp", "qFlags", "qSpare"}


def rows(database, table):
    """Every row of ``table`` as a dict, without the bookkeeping columns, sorted."""
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        result = [{k: r[k] for k in r.keys() if k not in BOOKKEEPING}
                  for r in connection.execute(f"SELECT * FROM {table}")]
    return sorted(result, key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def column(database, table, name):
    with sqlite3.connect(database) as connection:
        return sorted(r[0] for r in connection.execute(f"SELECT {name} FROM {table}"))


def snapshot(database):
    """All four image-level tables."""
    return {table: rows(database, table)
            for table in ("DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages")}
