//! The simulator's own small HTTP endpoint, on 127.0.0.1 only:
//! `GET /books` (every agent and task, [`Books`]), `GET /stats` (totals and
//! the simulator's own CPU and memory, [`Stats`]) and `POST /release`
//! (held tasks finish).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

use crate::Simulator;
use crate::books::{Books, Stats};

pub(crate) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/books", get(books))
        .route("/stats", get(stats))
        .route("/release", post(release))
        .with_state(sim)
}

async fn books(State(sim): State<Arc<Simulator>>) -> Json<Books> {
    Json(sim.books())
}

async fn stats(State(sim): State<Arc<Simulator>>) -> Json<Stats> {
    Json(sim.stats())
}

async fn release(State(sim): State<Arc<Simulator>>) -> Json<u64> {
    Json(sim.release())
}
