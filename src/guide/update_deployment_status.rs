//! `update_deployment_status`, the guide's handler for `deployment_status`: record what
//! GitHub says a deployment's state now is. Statuses posted by deployhook come back this
//! way too, so this is also where an operator sees GitHub confirm them.

use crate::webhook::events::DeploymentStatusEvent;

/// Logs the new state and returns the sentence logged.
pub fn update_deployment_status(event: &DeploymentStatusEvent) -> String {
    let status = &event.deployment_status;
    let repo = event.repository.as_ref().map_or_else(
        || "an unnamed repository".to_owned(),
        |r| r.full_name.to_string(),
    );
    let environment = status
        .environment
        .as_deref()
        .or(event.deployment.environment.as_deref())
        .unwrap_or("an unnamed environment");
    let message = format!(
        "deployment {} of {repo} to {environment} is {}",
        event.deployment.id, status.state
    );
    tracing::info!(
        description = status.description.as_deref().unwrap_or_default(),
        log_url = status
            .log_url
            .as_deref()
            .or(status.target_url.as_deref())
            .unwrap_or_default(),
        environment_url = status.environment_url.as_deref().unwrap_or_default(),
        "{message}"
    );
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::events::Event;

    #[test]
    fn the_sentence_names_deployment_repository_environment_and_state() {
        let json = br#"{"deployment_status":{"state":"failure","environment":"production"},
            "deployment":{"id":880001,"environment":"production"},
            "repository":{"full_name":"acme/widgets"}}"#;
        let Event::DeploymentStatus(event) = Event::parse("deployment_status", json).unwrap()
        else {
            panic!("not a deployment status");
        };
        assert_eq!(
            update_deployment_status(&event),
            "deployment 880001 of acme/widgets to production is failure"
        );
    }
}
