//! Fit a model on synthetic listening data, recommend, find similar items, save and load it.
//!
//! ```text
//! cargo run --release --example quickstart [-- MODEL_PATH]
//! ```
//!
//! The data has two taste groups: the first half of the users play items of the first half, the
//! rest items of the second half, each user all but a few of their group's items. The model
//! should recommend each user first an item of their group they have not played. With a path, the
//! model is saved there (the Python package loads it with `AlternatingLeastSquares.load`) and
//! the recommendations are printed as one JSON object per user.

use ials_core::{CsrMatrix, Model, Settings};

const USERS: usize = 200;
const ITEMS: usize = 60;

/// User u plays every item of their group but the ones `u % 7` and `u % 5` places in.
fn listening_data() -> CsrMatrix {
    let half = ITEMS / 2;
    let (mut indptr, mut indices, mut plays) = (vec![0i64], Vec::new(), Vec::new());
    for user in 0..USERS {
        let first = if user < USERS / 2 { 0 } else { half };
        for offset in 0..half {
            if offset != user % 7 && offset != user % 5 {
                indices.push((first + offset) as i32);
                plays.push(1.0 + (user * offset % 4) as f32);
            }
        }
        indptr.push(indices.len() as i64);
    }
    CsrMatrix::new(indptr, indices, plays, ITEMS).expect("a valid matrix")
}

fn main() -> Result<(), ials_core::Error> {
    let plays = listening_data();
    let settings = Settings {
        factors: 4,
        regularization: 10.0,
        iterations: 10,
        random_state: 42,
        ..Settings::default()
    };
    let model = Model::<f32>::fit(&plays.view(), settings)?;

    let save_to = std::env::args().nth(1);
    let mut in_group = 0;
    for user in 0..USERS {
        let played = plays.view().row(user).0;
        let best = model.recommend(user, played, 2)?;
        let first_half = |item: i32| (item as usize) < ITEMS / 2;
        if best
            .first()
            .is_some_and(|&(item, _)| first_half(item) == (user < USERS / 2))
        {
            in_group += 1;
        }
        if save_to.is_some() {
            let items: Vec<String> = best.iter().map(|(item, _)| item.to_string()).collect();
            println!("{{\"user\": {user}, \"items\": [{}]}}", items.join(", "));
        }
    }
    let similar = model.similar_items(3, 4)?;
    if let Some(path) = save_to {
        model.save(&path)?;
        let again = Model::<f32>::load(&path)?;
        assert_eq!(again.item_factors(), model.item_factors());
    } else {
        println!("{in_group} of {USERS} users get an unplayed item of their own group first");
        println!("items most like item 3: {similar:?}");
    }
    Ok(())
}
