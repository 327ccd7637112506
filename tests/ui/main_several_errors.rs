#[multipool::main(workers = 0, threads = 4)]
fn main() {}
