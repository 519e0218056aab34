//! Reading a role's TOML configuration: absent file → defaults; unknown keys → an error that
//! names them, before anything starts.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("in {}", p.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use clearinghouse::ClearinghouseConfig;
    use operator::OperatorConfig;

    use crate::npdb_cmd::NpdbConfig;
    use crate::ocs_cmd::OcsRoleConfig;

    fn read<T: serde::de::DeserializeOwned + Default>(text: &str) -> anyhow::Result<T> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("role.toml");
        std::fs::write(&path, text)?;
        super::load(Some(&path))
    }

    /// A table written out but left empty must mean what leaving it out means: a nested
    /// type's own defaults must not replace the role's.
    #[test]
    fn an_empty_table_is_no_table_in_every_role() {
        let ch: ClearinghouseConfig = read("[verification]\n[dispatcher]").unwrap();
        assert_eq!(ch, ClearinghouseConfig::default());
        let op: OperatorConfig = read("[npdb]\n[npdb.enum_dns]\n[smpp]\n[policy]").unwrap();
        assert_eq!(op, OperatorConfig::default());
        let npdb: NpdbConfig = read("[replica]\n[replica.enum_dns]").unwrap();
        assert_eq!(npdb.replica, NpdbConfig::default().replica);
        let ocs: OcsRoleConfig = read("[ocs]\n[ocs.gy]").unwrap();
        assert_eq!(ocs, OcsRoleConfig::default());
    }

    #[test]
    fn a_table_without_a_required_key_is_refused_naming_it() {
        let e = read::<ClearinghouseConfig>("[deadlines]\ndeposit_ms = 1000").unwrap_err();
        assert!(format!("{e:#}").contains("credit_info_ms"), "{e:#}");
        let e = read::<OperatorConfig>("[[interconnect]]\noperator = \"opb\"\naddr = \"127.0.0.1:2776\"").unwrap_err();
        assert!(format!("{e:#}").contains("system_id"), "{e:#}");
        let e = read::<NpdbConfig>("[replica]\nclearinghouse_ur = \"http://x\"").unwrap_err();
        assert!(format!("{e:#}").contains("clearinghouse_ur"), "{e:#}");
        let e = read::<OcsRoleConfig>("[[peers]]\norigin_host = \"gw\"").unwrap_err();
        assert!(format!("{e:#}").contains("origin_realm"), "{e:#}");
    }
}
