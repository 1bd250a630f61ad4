//! The route group a request is counted under in the decision metrics (`route_group` label):
//! which of LiteLLM's groups the path belongs to, from a short fixed list, so that operators can
//! graph inference traffic apart from management and info calls. The value set is closed
//! (a label must not grow with the paths clients send).

use super::RouteList;

/// A request's route group, as its metric label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroupLabel {
    /// `llm_api_routes`: completions, embeddings, images, audio, files, assistants, … .
    LlmApi,
    /// `info_routes`: key, user, team and model information.
    Info,
    /// `management_routes`: creating and changing keys, teams, users, organizations.
    Management,
    /// `spend_tracking_routes`.
    SpendTracking,
    /// Any other path.
    Other,
}

impl RouteGroupLabel {
    pub fn label(self) -> &'static str {
        match self {
            RouteGroupLabel::LlmApi => "llm_api",
            RouteGroupLabel::Info => "info",
            RouteGroupLabel::Management => "management",
            RouteGroupLabel::SpendTracking => "spend_tracking",
            RouteGroupLabel::Other => "other",
        }
    }
}

/// LiteLLM's groups, compiled once at load, tried in this order: a path in two groups takes
/// the first, so the narrower groups (info, spend) come before `management_routes`, which
/// holds most of them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGroupLabels(Vec<(RouteGroupLabel, RouteList)>);

impl Default for RouteGroupLabels {
    fn default() -> Self {
        RouteGroupLabels(
            [
                (RouteGroupLabel::LlmApi, "llm_api_routes"),
                (RouteGroupLabel::Info, "info_routes"),
                (RouteGroupLabel::SpendTracking, "spend_tracking_routes"),
                (RouteGroupLabel::Management, "management_routes"),
            ]
            .into_iter()
            .map(|(class, group)| (class, RouteList::compile(&[group])))
            .collect(),
        )
    }
}

impl RouteGroupLabels {
    pub fn of(&self, route: &str) -> RouteGroupLabel {
        self.0.iter().find(|(_, list)| list.matches(route)).map_or(RouteGroupLabel::Other, |(class, _)| *class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_take_their_litellm_group() {
        let classes = RouteGroupLabels::default();
        assert_eq!(classes.of("/v1/chat/completions"), RouteGroupLabel::LlmApi);
        assert_eq!(classes.of("/openai/deployments/gpt-4o/chat/completions"), RouteGroupLabel::LlmApi);
        assert_eq!(classes.of("/key/info"), RouteGroupLabel::Info);
        assert_eq!(classes.of("/key/generate"), RouteGroupLabel::Management);
        assert_eq!(classes.of("/spend/logs"), RouteGroupLabel::SpendTracking);
        assert_eq!(classes.of("/custom/thing"), RouteGroupLabel::Other);
        assert_eq!(classes.of(""), RouteGroupLabel::Other);
    }

    #[test]
    fn labels_are_prometheus_label_values_envoy_can_extract() {
        for class in [RouteGroupLabel::LlmApi, RouteGroupLabel::Info, RouteGroupLabel::Management, RouteGroupLabel::SpendTracking, RouteGroupLabel::Other] {
            assert!(class.label().chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{class:?}");
        }
    }
}
