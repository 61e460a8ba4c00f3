//! Parquet (how the Hugging Face hub serves datasets), read row by row through the record API:
//! one row group is decoded at a time, and nested lists and structs become JSON arrays and objects.

use super::{RawBody, RawRecord, RawRecords};
use crate::data::error::{DataError, Result};
use crate::data::problem::Location;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;
use std::fs::File;
use std::path::Path;

pub fn open(path: &Path, file: File) -> Result<RawRecords> {
    // The parquet crate panics on some hostile files (found by examples/fuzz.rs): contained,
    // they are malformed-file errors like the rest.
    let malformed = |location: String, message: String| DataError::Malformed {
        path: path.to_path_buf(),
        location,
        message,
    };
    let reader = crate::files::contain(|| SerializedFileReader::new(file))
        .map_err(|p| malformed("footer".into(), format!("not a readable Parquet file: {p}")))?
        .map_err(|e| malformed("footer".into(), format!("not a readable Parquet file: {e}")))?;
    let rows = reader.metadata().file_metadata().num_rows();
    if rows == 0 {
        return Ok(Box::new(std::iter::empty()));
    }
    let path = path.to_path_buf();
    let mut index = 0u64;
    let mut failed = false;
    let mut rows = reader.into_iter();
    let iter = std::iter::from_fn(move || {
        if failed {
            return None;
        }
        index += 1;
        let row = match crate::files::contain(|| rows.next()) {
            Ok(None) => return None,
            Ok(Some(r)) => r,
            Err(p) => Err(parquet::errors::ParquetError::General(p)),
        };
        Some(match row {
            Ok(row) => Ok(RawRecord {
                location: Location::Record(index),
                body: RawBody::Value(match row.to_json_value() {
                    Value::Object(m) => Ok(m),
                    other => Err(super::expected_object(&other)),
                }),
            }),
            Err(e) => {
                failed = true;
                Err(DataError::Malformed {
                    path: path.clone(),
                    location: format!("record {index}"),
                    message: format!("cannot decode the Parquet row: {e}"),
                })
            }
        })
    });
    Ok(Box::new(iter))
}
