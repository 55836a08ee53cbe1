pub const EXAMPLE: &str = "";
