//! SCIM resources in SQLite: each write with its delivery and ledger event in one transaction.

use rusqlite::{OptionalExtension, Row, params};
use writ_core::intake::DeliveryRecord;
use writ_core::name::IdentityName;
use writ_core::time::Timestamp;
use writ_store::{DeliveryRow, NewEvent, Result, ScimRow, ScimStore, StoreError};

use crate::{SqliteStore, append, corrupt, map_err};

const COLUMNS: &str = "kind, id, name_key, identity, doc, version, created_ms, updated_ms, deleted, settled";

fn columns(row: &Row<'_>) -> rusqlite::Result<(ScimRow, Option<String>)> {
    let identity: Option<String> = row.get(3)?;
    Ok((
        ScimRow {
            kind: row.get(0)?,
            id: row.get(1)?,
            name_key: row.get(2)?,
            identity: None,
            doc: row.get(4)?,
            version: row.get(5)?,
            created: Timestamp::from_millis(row.get(6)?),
            updated: Timestamp::from_millis(row.get(7)?),
            deleted: row.get::<_, i64>(8)? != 0,
            settled: row.get(9)?,
        },
        identity,
    ))
}

fn finish((row, identity): (ScimRow, Option<String>)) -> Result<ScimRow> {
    let identity = identity.map(|i| IdentityName::parse(&i)).transpose().map_err(corrupt("SCIM identity"))?;
    Ok(ScimRow { identity, ..row })
}

impl ScimStore for SqliteStore {
    fn scim_resource(&self, kind: &str, id: &str) -> Result<Option<ScimRow>> {
        let connection = self.lock()?;
        let row = connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM scim_resources WHERE kind = ?1 AND id = ?2"))
            .and_then(|mut s| s.query_row(params![kind, id], columns).optional())
            .map_err(map_err)?;
        row.map(finish).transpose()
    }

    fn scim_last_write(&self) -> Result<Option<Timestamp>> {
        let connection = self.lock()?;
        let last: Option<i64> = connection
            .prepare_cached("SELECT MAX(updated_ms) FROM scim_resources")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(map_err)?;
        Ok(last.map(Timestamp::from_millis))
    }

    fn scim_resources(&self, kind: &str, deleted: bool) -> Result<Vec<ScimRow>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM scim_resources WHERE kind = ?1 AND (?2 OR deleted = 0) ORDER BY created_ms, id"
            ))
            .map_err(map_err)?;
        let rows: Vec<(ScimRow, Option<String>)> = statement
            .query_map(params![kind, deleted], columns)
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        rows.into_iter().map(finish).collect()
    }

    fn scim_write(
        &self,
        row: &ScimRow,
        expected: Option<i64>,
        delivery: &DeliveryRecord,
        event: &NewEvent,
    ) -> Result<u64> {
        let (row, event) = (row.clone(), event.clone());
        let delivery = DeliveryRow::from_record(delivery)?;
        let indices = self.writer.submit(Box::new(move |tx| {
            let identity = row.identity.as_ref().map(ToString::to_string);
            let values = params![
                row.kind,
                row.id,
                row.name_key,
                identity,
                row.doc,
                row.version,
                row.created.as_millis(),
                row.updated.as_millis(),
                i64::from(row.deleted),
                row.settled,
            ];
            let written = match expected {
                None => tx
                    .prepare_cached(&format!(
                        "INSERT INTO scim_resources ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                    ))
                    .and_then(|mut s| s.execute(values)),
                Some(version) => tx
                    .prepare_cached(
                        "UPDATE scim_resources SET name_key = ?3, identity = ?4, doc = ?5, version = ?6,
                         created_ms = ?7, updated_ms = ?8, deleted = ?9, settled = ?10
                         WHERE kind = ?1 AND id = ?2 AND version = ?11",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            row.kind,
                            row.id,
                            row.name_key,
                            identity,
                            row.doc,
                            row.version,
                            row.created.as_millis(),
                            row.updated.as_millis(),
                            i64::from(row.deleted),
                            row.settled,
                            version,
                        ])
                    }),
            }
            .map_err(|error| match map_err(error) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("a {} named {:?} exists already", row.kind, row.name_key))
                }
                other => other,
            })?;
            if written != 1 {
                return Err(StoreError::Conflict(format!("{} {} changed since it was read", row.kind, row.id)));
            }
            crate::intake::insert_delivery(tx, &delivery)?;
            append(tx, std::slice::from_ref(&event))
        }))?;
        indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
    }

    fn link_scim(&self, identity: &IdentityName, external_id: &str, event: &NewEvent) -> Result<u64> {
        let (identity, external_id, event) = (identity.clone(), external_id.to_owned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached("INSERT INTO scim_links (identity, external_id) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![identity.as_str(), external_id]))
                .map_err(|e| match map_err(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!(
                        "{identity} is linked already, or that externalId is another identity's"
                    )),
                    other => other,
                })?;
            append(tx, std::slice::from_ref(&event))
        }))?;
        indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
    }

    fn scim_link(&self, identity: &IdentityName) -> Result<Option<String>> {
        let connection = self.lock()?;
        connection
            .prepare_cached("SELECT external_id FROM scim_links WHERE identity = ?1")
            .and_then(|mut s| s.query_row([identity.as_str()], |r| r.get(0)).optional())
            .map_err(map_err)
    }

    fn scim_links(&self) -> Result<Vec<(IdentityName, String)>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare("SELECT identity, external_id FROM scim_links ORDER BY identity")
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(map_err)?;
        rows.map(|row| {
            let (identity, external_id) = row.map_err(map_err)?;
            Ok((IdentityName::parse(&identity).map_err(corrupt("scim link identity"))?, external_id))
        })
        .collect()
    }

    fn scim_settle(&self, kind: &str, id: &str, settled: &str, expected: &str) -> Result<()> {
        let (kind, id, settled, expected) =
            (kind.to_owned(), id.to_owned(), settled.to_owned(), expected.to_owned());
        self.writer.submit(Box::new(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE scim_resources SET settled = ?3 WHERE kind = ?1 AND id = ?2 AND settled = ?4",
                )
                .and_then(|mut s| s.execute(params![kind, id, settled, expected]))
                .map_err(map_err)?;
            if changed != 1 {
                return Err(StoreError::Conflict(format!(
                    "the lifecycle of {kind} {id} was settled concurrently"
                )));
            }
            Ok(Vec::new())
        }))?;
        Ok(())
    }
}
