#[multipool::main(start_paused = true, start_paused = false)]
async fn main() {}
