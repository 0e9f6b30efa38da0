use servent_coin::{Amount, MAX_MONEY, subsidy};

#[test]
fn whole_schedule_sums_below_21m_exactly() {
    let mut total = Amount::ZERO;
    let mut last = 0;
    for h in 0..(64 * 210_000u32) {
        let s = subsidy(h, 210_000);
        if s > Amount::ZERO {
            last = h;
        }
        total = total.checked_add(s).expect("sum stays in money range");
    }
    assert_eq!(total.to_sat(), 2_099_999_997_690_000);
    assert_eq!(last, 6_929_999);
    assert_eq!(subsidy(150, 150).to_sat(), 25 * 100_000_000);
}

#[test]
fn amount_refuses_out_of_range() {
    assert!(Amount::from_sat(-1).is_none());
    assert!(Amount::from_sat(MAX_MONEY + 1).is_none());
    let max = Amount::from_sat(MAX_MONEY).expect("max");
    assert!(max.checked_add(Amount::from_sat(1).expect("1")).is_none());
    assert!(Amount::ZERO.checked_sub(max).is_none());
}
