from transferlm.data.readers import READERS, Table, read_table
from transferlm.data.records import Record, read_records, records_from_table, stratified_split

__all__ = ["READERS", "Table", "read_table", "Record", "read_records", "records_from_table", "stratified_split"]
