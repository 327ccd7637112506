#[multipool::test]
async fn with_arguments(n: u32) {
    assert_eq!(n, n);
}

fn main() {}
