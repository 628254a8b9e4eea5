//! SCIM resources in PostgreSQL: each write with its delivery and ledger event in one
//! transaction.

use writ_core::intake::DeliveryRecord;
use writ_core::name::IdentityName;
use writ_core::time::Timestamp;
use writ_store::{DeliveryRow, NewEvent, Result, ScimRow, ScimStore, StoreError};

use crate::{PostgresStore, append, conflict_as, corrupt, map_err};

const COLUMNS: &str = "kind, id, name_key, identity, doc, version, created_ms, updated_ms, deleted, settled";

fn from_row(row: &postgres::Row) -> Result<ScimRow> {
    let identity: Option<String> = row.get(3);
    Ok(ScimRow {
        kind: row.get(0),
        id: row.get(1),
        name_key: row.get(2),
        identity: identity.map(|i| IdentityName::parse(&i)).transpose().map_err(corrupt("SCIM identity"))?,
        doc: row.get(4),
        version: row.get(5),
        created: Timestamp::from_millis(row.get(6)),
        updated: Timestamp::from_millis(row.get(7)),
        deleted: row.get::<_, i64>(8) != 0,
        settled: row.get(9),
    })
}

impl ScimStore for PostgresStore {
    fn scim_resource(&self, kind: &str, id: &str) -> Result<Option<ScimRow>> {
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query(
                &format!("SELECT {COLUMNS} FROM scim_resources WHERE kind = $1 AND id = $2"),
                &[&kind, &id],
            )
            .map_err(map_err)?;
        rows.first().map(from_row).transpose()
    }

    fn scim_last_write(&self) -> Result<Option<Timestamp>> {
        let mut client = self.lock()?;
        let row =
            client.cached().query_one("SELECT MAX(updated_ms) FROM scim_resources", &[]).map_err(map_err)?;
        Ok(row.get::<_, Option<i64>>(0).map(Timestamp::from_millis))
    }

    fn scim_resources(&self, kind: &str, deleted: bool) -> Result<Vec<ScimRow>> {
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM scim_resources WHERE kind = $1 AND ($2 OR deleted = 0) ORDER BY created_ms, id"
                ),
                &[&kind, &deleted],
            )
            .map_err(map_err)?;
        rows.iter().map(from_row).collect()
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
        self.write(move |tx, next| {
            let identity = row.identity.as_ref().map(ToString::to_string);
            let deleted = i64::from(row.deleted);
            let (created, updated) = (row.created.as_millis(), row.updated.as_millis());
            let taken = format!("a {} named {:?} exists already", row.kind, row.name_key);
            let written = match expected {
                None => tx.execute(
                    &format!("INSERT INTO scim_resources ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                    &[
                        &row.kind,
                        &row.id,
                        &row.name_key,
                        &identity,
                        &row.doc,
                        &row.version,
                        &created,
                        &updated,
                        &deleted,
                        &row.settled,
                    ],
                ),
                Some(version) => tx.execute(
                    "UPDATE scim_resources SET name_key = $3, identity = $4, doc = $5, version = $6,
                     created_ms = $7, updated_ms = $8, deleted = $9, settled = $10
                     WHERE kind = $1 AND id = $2 AND version = $11",
                    &[
                        &row.kind,
                        &row.id,
                        &row.name_key,
                        &identity,
                        &row.doc,
                        &row.version,
                        &created,
                        &updated,
                        &deleted,
                        &row.settled,
                        &version,
                    ],
                ),
            }
            .map_err(map_err)
            .map_err(conflict_as(taken))?;
            if written != 1 {
                return Err(StoreError::Conflict(format!("{} {} changed since it was read", row.kind, row.id)));
            }
            crate::intake::insert_delivery(tx, &delivery)?;
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            let index = indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))?;
            Ok((index, 1))
        })
    }

    fn link_scim(&self, identity: &IdentityName, external_id: &str, event: &NewEvent) -> Result<u64> {
        let (identity, external_id, event) = (identity.clone(), external_id.to_owned(), event.clone());
        self.write(move |tx, next| {
            tx.execute(
                "INSERT INTO scim_links (identity, external_id) VALUES ($1, $2)",
                &[&identity.as_str(), &external_id],
            )
            .map_err(map_err)
            .map_err(conflict_as(format!(
                "{identity} is linked already, or that externalId is another identity's"
            )))?;
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            Ok((indices.first().copied().unwrap_or(0), 1))
        })
    }

    fn scim_link(&self, identity: &IdentityName) -> Result<Option<String>> {
        let rows = self
            .lock()?
            .cached()
            .query("SELECT external_id FROM scim_links WHERE identity = $1", &[&identity.as_str()])
            .map_err(map_err)?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn scim_links(&self) -> Result<Vec<(IdentityName, String)>> {
        let rows = self
            .lock()?
            .cached()
            .query("SELECT identity, external_id FROM scim_links ORDER BY identity", &[])
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    IdentityName::parse(r.get(0)).map_err(corrupt("scim link identity"))?,
                    r.get::<_, String>(1),
                ))
            })
            .collect()
    }

    fn scim_settle(&self, kind: &str, id: &str, settled: &str, expected: &str) -> Result<()> {
        let changed = self.side(|tx| {
            tx.execute(
                "UPDATE scim_resources SET settled = $3 WHERE kind = $1 AND id = $2 AND settled = $4",
                &[&kind, &id, &settled, &expected],
            )
            .map_err(map_err)
        })?;
        if changed != 1 {
            return Err(StoreError::Conflict(format!(
                "the lifecycle of {kind} {id} was settled concurrently"
            )));
        }
        Ok(())
    }
}
