//! Resolves the template's intrinsic functions against the local resources: the tables and
//! queues the runner created, the functions it runs and the parameter values.

use std::collections::BTreeMap;

use crate::template::Intrinsic;

pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// Local names of the template's resources, for resolving intrinsic functions.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub parameters: BTreeMap<String, String>,
    /// logical id → local table name
    pub tables: BTreeMap<String, String>,
    /// logical id → (queue name, queue URL)
    pub queues: BTreeMap<String, (String, String)>,
    /// logical ids of functions (a `!Ref` gives the function name)
    pub functions: Vec<String>,
}

impl Resolver {
    pub fn resolve(&self, value: &Intrinsic) -> Result<String, String> {
        match value {
            Intrinsic::Literal(text) => Ok(text.clone()),
            Intrinsic::Ref(name) => self.reference(name),
            Intrinsic::GetAtt(resource, attribute) => self.attribute(resource, attribute),
            Intrinsic::Sub(text) => {
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..]
                        .find('}')
                        .ok_or_else(|| format!("unterminated ${{ in !Sub {text}"))?;
                    let name = &rest[start + 2..start + end];
                    out.push_str(&match name.split_once('.') {
                        Some((resource, attribute)) if !name.starts_with("AWS::") => {
                            self.attribute(resource, attribute)?
                        }
                        _ => self.reference(name)?,
                    });
                    rest = &rest[start + end + 1..];
                }
                out.push_str(rest);
                Ok(out)
            }
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        match name {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT_ID.to_owned()),
            "AWS::StackName" => return Ok("loyalty-local".to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_owned()),
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        if let Some(table) = self.tables.get(name) {
            return Ok(table.clone());
        }
        if let Some((_, url)) = self.queues.get(name) {
            return Ok(url.clone());
        }
        if self.functions.iter().any(|f| f == name) {
            return Ok(name.to_owned());
        }
        Err(format!(
            "!Ref {name}: no such parameter, table, queue or function"
        ))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, String> {
        if let Some((name, url)) = self.queues.get(resource) {
            return match attribute {
                "Arn" => Ok(queue_arn(name)),
                "QueueName" => Ok(name.clone()),
                "QueueUrl" => Ok(url.clone()),
                _ => Err(format!("!GetAtt {resource}.{attribute} is not supported")),
            };
        }
        if let Some(table) = self.tables.get(resource) {
            return match attribute {
                "Arn" => Ok(format!(
                    "arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table}"
                )),
                _ => Err(format!("!GetAtt {resource}.{attribute} is not supported")),
            };
        }
        if self.functions.iter().any(|f| f == resource) && attribute == "Arn" {
            return Ok(function_arn(resource));
        }
        Err(format!("!GetAtt {resource}.{attribute}: unknown resource"))
    }
}

pub fn function_arn(logical_id: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/probe-template.yaml"
    ));

    #[test]
    fn fixture_environment_resolves_against_local_resources() {
        let template = Template::parse(FIXTURE).expect("parses");
        let probe = template.function("ProbeFunction").expect("probe");
        let mut resolver = Resolver {
            parameters: template.parameters.clone(),
            ..Resolver::default()
        };
        resolver.tables.insert("ProbeTable".into(), "t1".into());
        resolver.queues.insert(
            "WorkQueue".into(),
            ("p-work".into(), "http://q/p-work".into()),
        );
        let env: BTreeMap<String, String> = probe
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), resolver.resolve(v).expect(k)))
            .collect();
        assert_eq!(env["TABLE_NAME"], "t1");
        assert_eq!(env["WORK_QUEUE_URL"], "http://q/p-work");
        assert_eq!(env["WORK_QUEUE_ARN"], queue_arn("p-work"));
        assert_eq!(env["GREETING"], "hello-us-east-1");
        assert!(resolver.resolve(&Intrinsic::Ref("Nope".into())).is_err());
    }
}
