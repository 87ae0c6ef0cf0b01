use super::*;

/// Signals: speed (float), rpm (integer), door_open (boolean), gear (state P R N D).
struct Scope;

const GEARS: [&str; 4] = ["P", "R", "N", "D"];

impl SignalScope for Scope {
    fn signal(&self, name: &str) -> Option<(SignalId, SignalType, &[String])> {
        static STATES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let states = STATES.get_or_init(|| GEARS.iter().map(|s| s.to_string()).collect());
        match name {
            "speed" => Some((SignalId(0), SignalType::Float, &[])),
            "rpm" => Some((SignalId(1), SignalType::Integer, &[])),
            "door_open" => Some((SignalId(2), SignalType::Boolean, &[])),
            "gear" => Some((SignalId(3), SignalType::State, states)),
            _ => None,
        }
    }
}

fn check(text: &str) -> Filter {
    parse(text, &Scope).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn refused(text: &str) -> String {
    parse(text, &Scope).unwrap_err().to_string()
}

/// The truth of `text` for a record carrying `values` (by signal id).
fn truth(text: &str, values: &[(u16, Value)]) -> Truth {
    check(text).eval(&|id: SignalId| values.iter().find(|(i, _)| *i == id.0).map(|(_, v)| *v))
}

#[test]
fn compares_numbers_across_integer_and_float() {
    let rec = [(0, Value::Float(54.2)), (1, Value::Integer(2000))];
    assert_eq!(truth("speed > 50", &rec), Truth::True);
    assert_eq!(truth("speed <= 54.2", &rec), Truth::True);
    assert_eq!(truth("rpm = 2000", &rec), Truth::True);
    assert_eq!(truth("rpm < 1999.5", &rec), Truth::False);
    assert_eq!(truth("rpm >= -1", &rec), Truth::True);
    assert_eq!(truth("rpm != 2e3", &rec), Truth::False);
    assert_eq!(truth("rpm in [1, 2000, 3]", &rec), Truth::True);
}

#[test]
fn states_and_booleans() {
    let rec = [(2, Value::Boolean(true)), (3, Value::State(3))];
    assert_eq!(truth("door_open = true", &rec), Truth::True);
    assert_eq!(truth("door_open != true", &rec), Truth::False);
    assert_eq!(truth("gear = \"D\"", &rec), Truth::True);
    assert_eq!(truth("gear in [\"R\", \"N\"]", &rec), Truth::False);
    assert_eq!(truth("not gear in [\"R\", \"N\"]", &rec), Truth::True);
}

#[test]
fn absent_signals_are_unknown_and_logic_is_three_valued() {
    let engine = [(1, Value::Integer(900))];
    assert_eq!(truth("speed > 0", &engine), Truth::Unknown);
    assert_eq!(truth("not speed > 0", &engine), Truth::Unknown);
    assert_eq!(truth("rpm != 0 or speed != 0", &engine), Truth::True);
    assert_eq!(truth("speed != 0 or rpm != 0", &engine), Truth::True);
    assert_eq!(truth("speed != 0 or rpm = 0", &engine), Truth::Unknown);
    assert_eq!(truth("speed != 0 and rpm = 0", &engine), Truth::False);
    assert_eq!(truth("rpm = 0 and speed != 0", &engine), Truth::False);
    assert_eq!(truth("rpm != 0 and speed != 0", &engine), Truth::Unknown);
    assert!(!check("speed > 0").passes(&|_| None));
}

#[test]
fn precedence_not_over_and_over_or_and_parentheses() {
    let rec = [(0, Value::Float(10.0)), (1, Value::Integer(0))];
    // and binds tighter: true or (false and false)
    assert_eq!(truth("speed > 5 or rpm > 0 and rpm > 1", &rec), Truth::True);
    assert_eq!(
        truth("(speed > 5 or rpm > 0) and rpm > 1", &rec),
        Truth::False
    );
    assert_eq!(truth("not rpm > 0 and speed > 5", &rec), Truth::True);
    assert_eq!(truth("not (rpm > 0 or speed > 5)", &rec), Truth::False);
    assert_eq!(truth("not not speed > 5", &rec), Truth::True);
}

#[test]
fn refuses_what_does_not_type_check_and_says_where() {
    assert_eq!(
        refused("sped > 5"),
        "at character 1: unknown signal \"sped\""
    );
    assert!(refused("gear > \"D\"").contains("only = and != (or in) compare it"));
    assert!(refused("gear = \"X\"").contains("not one of gear's states"));
    assert!(refused("door_open = 1").contains("cannot be compared with a number"));
    assert!(refused("door_open in [true]").contains("instead of in"));
    assert!(refused("speed = \"fast\"").contains("cannot be compared with a string"));
    assert!(refused("rpm = true").contains("cannot be compared with a boolean"));
    assert_eq!(
        refused("speed > 5 and"),
        "at character 14: expected a signal name or \"(\" at the end"
    );
    assert!(refused("(speed > 5").contains("expected \")\" at the end"));
    assert!(refused("speed > 5 speed").contains("unexpected \"speed\""));
    assert!(refused("speed ! 5").contains("negate with \"not\""));
    assert!(refused("speed > -").contains("is not a number"));
    assert!(refused("gear = \"D").contains("unterminated string"));
    assert!(refused("speed > 5 # x").contains("unexpected character '#'"));
    assert!(refused("rpm in [1, 2").contains("expected \",\" or \"]\""));
    assert!(refused("and > 1").contains("expected a signal name"));
}
