//! The jobs: what is trained. Each plugs into the trainer (arriving with the engine issue);
//! their backend-independent parts live here.

pub mod text;
