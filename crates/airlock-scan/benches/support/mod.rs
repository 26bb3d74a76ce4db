//! The generated diffs the throughput benchmark scans, shared with the test that holds
//! the scanner's findings on them unchanged (`tests/unchanged.rs`).

/// A deterministic generator (xorshift), so every run scans the same bytes.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

pub const LINES: &[&str] = &[
    "    let total = items.iter().map(|item| item.price * item.quantity).sum::<u64>();",
    "    if user.is_admin() && request.method() == Method::POST {",
    "        return Err(Error::InvalidInput(format!(\"unknown field {name}\")));",
    "def load_orders(session, customer_id):",
    "    rows = session.execute(select(Order).where(Order.customer_id == customer_id))",
    "    logger.info(\"processed %d orders for %s\", len(rows), customer_id)",
    "const response = await fetch(`${API_BASE}/v1/orders`, { headers });",
    "export function formatPrice(cents: number): string { return (cents / 100).toFixed(2); }",
    "func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {",
    "\tif err := json.NewEncoder(w).Encode(status); err != nil {",
    "public List<Order> findByCustomer(long id) { return repository.findByCustomerId(id); }",
    "  timeout: 30s",
    "  image: registry.internal/payments:1.42.0",
    "# Retry with exponential backoff; the upstream rate-limits bursts.",
    "    password = os.environ[\"DB_PASSWORD\"]",
    "    api_key = settings.get(\"api_key\")",
    "    assert_eq!(parse(\"10m\"), Some(Duration::from_secs(600)));",
    "        self.assertEqual(response.status_code, 200)",
    "",
];

/// One realistic patch of about `size` bytes: several files, hunks of context and changes.
pub fn patch(rng: &mut Rng, size: usize, serial: usize) -> Vec<u8> {
    patch_from(rng, size, LINES, |rng, file| {
        let ext = rng.pick(&["rs", "py", "ts", "go", "java", "yaml"]);
        format!("src/module{}/file{serial}_{file}.{ext}", rng.next() % 50)
    })
}

/// A patch of about `size` bytes whose lines are drawn from `lines`, its `file`th file
/// named by `path`.
pub fn patch_from(
    rng: &mut Rng,
    size: usize,
    lines: &[&str],
    mut path: impl FnMut(&mut Rng, usize) -> String,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 4096);
    let mut file = 0;
    while out.len() < size {
        let path = path(rng, file);
        out.extend_from_slice(
            format!("diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n").as_bytes(),
        );
        for hunk in 0..8 {
            let (context, removed, added) =
                (3, (rng.next() % 4) as usize, 4 + (rng.next() % 12) as usize);
            let start = 10 + hunk * 40;
            let old_len = context * 2 + removed;
            let new_len = context * 2 + added;
            out.extend_from_slice(
                format!("@@ -{start},{old_len} +{start},{new_len} @@\n").as_bytes(),
            );
            for _ in 0..context {
                out.extend_from_slice(format!(" {}\n", rng.pick(lines)).as_bytes());
            }
            for _ in 0..removed {
                out.extend_from_slice(format!("-{}\n", rng.pick(lines)).as_bytes());
            }
            for _ in 0..added {
                out.extend_from_slice(format!("+{}\n", rng.pick(lines)).as_bytes());
            }
            for _ in 0..context {
                out.extend_from_slice(format!(" {}\n", rng.pick(lines)).as_bytes());
            }
        }
        file += 1;
    }
    out
}
