//! Serve recommendations from a model trained elsewhere (for example by the Python package).
//!
//! ```text
//! cargo run --release --example recommend_from_file -- MODEL_PATH USER N [LIKED_ITEM ...]
//! ```
//!
//! Prints the `N` best items for `USER`, leaving out the liked items given, one `item score`
//! pair per line.

use std::process::ExitCode;

use ials_core::Model;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(user), Some(n)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: recommend_from_file MODEL_PATH USER N [LIKED_ITEM ...]");
        return ExitCode::from(2);
    };
    let numbers = || -> Result<(usize, usize, Vec<i32>), std::num::ParseIntError> {
        let liked = args[3..]
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?;
        Ok((user.parse()?, n.parse()?, liked))
    };
    let Ok((user, n, mut liked)) = numbers() else {
        eprintln!("USER, N and LIKED_ITEM must be non-negative integers");
        return ExitCode::from(2);
    };
    liked.sort_unstable();
    liked.dedup();
    let best = Model::<f32>::load(path).and_then(|model| model.recommend(user, &liked, n));
    match best {
        Ok(best) => {
            for (item, score) in best {
                println!("{item} {score:?}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
