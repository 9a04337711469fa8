//! `Filter`: a WHERE clause under construction with its parameters, for list queries whose
//! conditions depend on the request (the product and order lists). Values only ever travel as
//! parameters (`$n` placeholders); the clauses are the caller's own SQL text.

use tokio_postgres::types::ToSql;

#[derive(Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filter {
    /// The placeholder of a new parameter.
    pub(crate) fn param(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    pub(crate) fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// The clauses joined with AND (`TRUE` when there is none).
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}
