//! Priority from impact and urgency through a configurable matrix (ITIL default:
//! priority = impact + urgency - 1, giving P1-P5).

use std::fmt;

/// Impact or urgency level: 1 = high, 2 = medium, 3 = low.
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=3;

/// Priority (1-5) indexed by impact row and urgency column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityMatrix([[i32; 3]; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority matrix {0}; expected three rows of three priorities 1-5, e.g. `1,2,3; 2,3,4; 3,4,5`")]
pub struct MatrixError(String);

impl Default for PriorityMatrix {
    fn default() -> Self {
        Self([[1, 2, 3], [2, 3, 4], [3, 4, 5]])
    }
}

impl PriorityMatrix {
    /// Parses `1,2,3; 2,3,4; 3,4,5` (rows: impact high, medium, low; columns: urgency).
    pub fn parse(text: &str) -> Result<Self, MatrixError> {
        let rows: Vec<&str> = text.split(';').map(str::trim).collect();
        if rows.len() != 3 {
            return Err(MatrixError(format!("has {} rows", rows.len())));
        }
        let mut matrix = [[0; 3]; 3];
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<&str> = row.split(',').map(str::trim).collect();
            if cells.len() != 3 {
                return Err(MatrixError(format!("row {} has {} values", i + 1, cells.len())));
            }
            for (j, cell) in cells.iter().enumerate() {
                let value: i32 =
                    cell.parse().map_err(|_| MatrixError(format!("value `{cell}` is not a number")))?;
                if !(1..=5).contains(&value) {
                    return Err(MatrixError(format!("value {value} is not a priority")));
                }
                matrix[i][j] = value;
            }
        }
        Ok(Self(matrix))
    }

    /// Priority for levels in 1..=3 (callers validate them first; out of range gives P5... never
    /// reached through the API).
    pub fn priority(&self, impact: i32, urgency: i32) -> i32 {
        let index = |level: i32| usize::try_from(level - 1).ok().filter(|i| *i < 3);
        match (index(impact), index(urgency)) {
            (Some(i), Some(u)) => self.0[i][u],
            _ => 5,
        }
    }
}

impl fmt::Display for PriorityMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<String> =
            self.0.iter().map(|r| r.iter().map(i32::to_string).collect::<Vec<_>>().join(",")).collect();
        f.write_str(&rows.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_itil_matrix() {
        let matrix = PriorityMatrix::default();
        for impact in LEVELS {
            for urgency in LEVELS {
                assert_eq!(matrix.priority(impact, urgency), impact + urgency - 1, "{impact}/{urgency}");
            }
        }
        // Spelled out, as the proto documents it.
        assert_eq!(matrix.priority(1, 1), 1);
        assert_eq!(matrix.priority(1, 2), 2);
        assert_eq!(matrix.priority(2, 1), 2);
        assert_eq!(matrix.priority(3, 3), 5);
    }

    #[test]
    fn parses_and_prints_a_custom_matrix() {
        let matrix = PriorityMatrix::parse(" 1,1,2 ;1,2,3; 2,3,4 ").unwrap();
        assert_eq!(matrix.priority(1, 2), 1);
        assert_eq!(matrix.priority(3, 3), 4);
        assert_eq!(matrix.to_string(), "1,1,2; 1,2,3; 2,3,4");
        assert_eq!(
            PriorityMatrix::parse(&PriorityMatrix::default().to_string()).unwrap(),
            PriorityMatrix::default()
        );
    }

    #[test]
    fn rejects_bad_matrices() {
        for bad in [
            "",
            "1,2,3; 2,3,4",
            "1,2,3; 2,3,4; 3,4",
            "1,2,3; 2,3,4; 3,4,6",
            "1,2,3; 2,x,4; 3,4,5",
            "0,2,3; 2,3,4; 3,4,5",
        ] {
            assert!(PriorityMatrix::parse(bad).is_err(), "{bad:?}");
        }
    }
}
