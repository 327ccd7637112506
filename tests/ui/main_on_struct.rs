#[multipool::main]
struct Main;

fn main() {}
