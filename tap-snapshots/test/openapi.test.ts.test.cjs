/* IMPORTANT
 * This snapshot file is auto-generated, but designed for humans.
 * It should be checked into source control and tracked carefully.
 * Re-generate by setting TAP_SNAPSHOT=1 and running tests.
 * Make sure to inspect the output below.  Do not ignore changes!
 */
'use strict'
exports[`test/openapi.test.ts > TAP > the document of the default configuration (snapshot) > OpenAPI 3 document, default options, schemes declared by the app 1`] = `
Object {
  "components": Object {
    "schemas": Object {},
    "securitySchemes": Object {
      "bearerAuth": Object {
        "bearerFormat": "JWT",
        "description": "Access token (typ at+jwt)",
        "scheme": "bearer",
        "type": "http",
      },
      "introspectionClient": Object {
        "description": "A resource server of \`introspection.clients\` (RFC 7662 §2.1)",
        "scheme": "basic",
        "type": "http",
      },
      "refreshCookie": Object {
        "description": "HttpOnly refresh-token cookie",
        "in": "cookie",
        "name": "refresh_token",
        "type": "apiKey",
      },
    },
  },
  "info": Object {
    "title": "fastify-token-auth",
    "version": "1.0.0",
  },
  "openapi": "3.0.3",
  "paths": Object {
    "/auth/login": Object {
      "post": Object {
        "requestBody": Object {
          "content": Object {
            "application/json": Object {
              "schema": Object {
                "additionalProperties": false,
                "properties": Object {
                  "password": Object {
                    "maxLength": 1024,
                    "minLength": 1,
                    "type": "string",
                  },
                  "username": Object {
                    "maxLength": 256,
                    "minLength": 1,
                    "type": "string",
                  },
                },
                "required": Array [
                  "username",
                  "password",
                ],
                "type": "object",
              },
            },
          },
          "required": true,
        },
        "responses": Object {
          "200": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "description": "A new access token; the refresh token is set in the cookie (or returned in the body)",
                  "properties": Object {
                    "accessToken": Object {
                      "type": "string",
                    },
                    "expiresIn": Object {
                      "description": "Seconds until the access token expires",
                      "type": "integer",
                    },
                    "tokenType": Object {
                      "enum": Array [
                        "Bearer",
                      ],
                      "type": "string",
                    },
                  },
                  "required": Array [
                    "accessToken",
                    "tokenType",
                    "expiresIn",
                  ],
                  "type": "object",
                },
              },
            },
            "description": "A new access token; the refresh token is set in the cookie (or returned in the body)",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [],
        "summary": "Log in with a username and password",
        "tags": Array [
          "token-auth",
        ],
      },
    },
    "/auth/logout": Object {
      "post": Object {
        "parameters": Array [
          Object {
            "in": "query",
            "name": "all",
            "required": false,
            "schema": Object {
              "enum": Array [
                "true",
                "false",
              ],
              "type": "string",
            },
          },
        ],
        "responses": Object {
          "204": Object {
            "description": "Logged out",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [
          Object {
            "refreshCookie": Array [],
          },
          Object {
            "bearerAuth": Array [],
          },
        ],
        "summary": "End this session, or every session of the user with ?all=true",
        "tags": Array [
          "token-auth",
        ],
      },
    },
    "/auth/reauthenticate": Object {
      "post": Object {
        "requestBody": Object {
          "content": Object {
            "application/json": Object {
              "schema": Object {
                "additionalProperties": false,
                "properties": Object {
                  "password": Object {
                    "maxLength": 1024,
                    "minLength": 1,
                    "type": "string",
                  },
                  "username": Object {
                    "maxLength": 256,
                    "minLength": 1,
                    "type": "string",
                  },
                },
                "required": Array [
                  "username",
                  "password",
                ],
                "type": "object",
              },
            },
          },
          "required": true,
        },
        "responses": Object {
          "200": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "description": "A new access token; the refresh token is set in the cookie (or returned in the body)",
                  "properties": Object {
                    "accessToken": Object {
                      "type": "string",
                    },
                    "expiresIn": Object {
                      "description": "Seconds until the access token expires",
                      "type": "integer",
                    },
                    "tokenType": Object {
                      "enum": Array [
                        "Bearer",
                      ],
                      "type": "string",
                    },
                  },
                  "required": Array [
                    "accessToken",
                    "tokenType",
                    "expiresIn",
                  ],
                  "type": "object",
                },
              },
            },
            "description": "A new access token; the refresh token is set in the cookie (or returned in the body)",
          },
          "401": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Wrong credentials (FST_TOKEN_AUTH_INVALID_CREDENTIALS), or a refresh token refused as by the refresh route",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Wrong credentials (FST_TOKEN_AUTH_INVALID_CREDENTIALS), or a refresh token refused as by the refresh route",
          },
          "403": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "The credentials are another user's (FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH), or a cross-site request",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "The credentials are another user's (FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH), or a cross-site request",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [
          Object {
            "refreshCookie": Array [],
          },
        ],
        "summary": "Prove again who the user of the current session is (step-up)",
        "tags": Array [
          "token-auth",
        ],
      },
    },
    "/auth/refresh": Object {
      "post": Object {
        "responses": Object {
          "200": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "description": "A new access token; the refresh token is set in the cookie (or returned in the body)",
                  "properties": Object {
                    "accessToken": Object {
                      "type": "string",
                    },
                    "expiresIn": Object {
                      "description": "Seconds until the access token expires",
                      "type": "integer",
                    },
                    "tokenType": Object {
                      "enum": Array [
                        "Bearer",
                      ],
                      "type": "string",
                    },
                  },
                  "required": Array [
                    "accessToken",
                    "tokenType",
                    "expiresIn",
                  ],
                  "type": "object",
                },
              },
            },
            "description": "A new access token; the refresh token is set in the cookie (or returned in the body)",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [
          Object {
            "refreshCookie": Array [],
          },
        ],
        "summary": "Exchange the refresh token for new tokens (rotation)",
        "tags": Array [
          "token-auth",
        ],
      },
    },
    "/auth/revoke": Object {
      "post": Object {
        "requestBody": Object {
          "content": Object {
            "application/json": Object {
              "schema": Object {
                "additionalProperties": false,
                "properties": Object {
                  "client_id": Object {
                    "maxLength": 256,
                    "type": "string",
                  },
                  "token": Object {
                    "maxLength": 8192,
                    "minLength": 1,
                    "type": "string",
                  },
                  "token_type_hint": Object {
                    "description": "\`refresh_token\` or \`access_token\`; either kind is found without it",
                    "maxLength": 64,
                    "type": "string",
                  },
                },
                "required": Array [
                  "token",
                ],
                "type": "object",
              },
            },
          },
          "required": true,
        },
        "responses": Object {
          "200": Object {
            "description": "Revoked, or nothing to revoke",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [],
        "summary": "Revoke a refresh or access token, ending its session (RFC 7009)",
        "tags": Array [
          "token-auth",
        ],
      },
    },
    "/auth/sessions": Object {
      "get": Object {
        "responses": Object {
          "200": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "description": "The user's live sessions, oldest first",
                  "properties": Object {
                    "sessions": Object {
                      "items": Object {
                        "properties": Object {
                          "createdAt": Object {
                            "format": "date-time",
                            "type": "string",
                          },
                          "current": Object {
                            "description": "The session of the access token used for this request",
                            "type": "boolean",
                          },
                          "expiresAt": Object {
                            "format": "date-time",
                            "type": "string",
                          },
                          "id": Object {
                            "type": "string",
                          },
                          "ip": Object {
                            "nullable": true,
                            "type": "string",
                          },
                          "lastUsedAt": Object {
                            "format": "date-time",
                            "type": "string",
                          },
                          "userAgent": Object {
                            "nullable": true,
                            "type": "string",
                          },
                        },
                        "required": Array [
                          "id",
                          "createdAt",
                          "lastUsedAt",
                          "expiresAt",
                          "userAgent",
                          "ip",
                          "current",
                        ],
                        "type": "object",
                      },
                      "type": "array",
                    },
                  },
                  "required": Array [
                    "sessions",
                  ],
                  "type": "object",
                },
              },
            },
            "description": "The user's live sessions, oldest first",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [
          Object {
            "bearerAuth": Array [],
          },
        ],
        "summary": "List the user's sessions",
        "tags": Array [
          "token-auth",
        ],
      },
    },
    "/auth/sessions/{id}": Object {
      "delete": Object {
        "parameters": Array [
          Object {
            "in": "path",
            "name": "id",
            "required": true,
            "schema": Object {
              "maxLength": 64,
              "minLength": 1,
              "pattern": "^[A-Za-z0-9_-]+$",
              "type": "string",
            },
          },
        ],
        "responses": Object {
          "204": Object {
            "description": "Session ended",
          },
          "4XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Refused; \`code\` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why",
          },
          "5XX": Object {
            "content": Object {
              "application/json": Object {
                "schema": Object {
                  "additionalProperties": true,
                  "description": "Store unavailable (503 with Retry-After) or a server error",
                  "properties": Object {
                    "code": Object {
                      "type": "string",
                    },
                    "error": Object {
                      "type": "string",
                    },
                    "message": Object {
                      "type": "string",
                    },
                    "statusCode": Object {
                      "type": "integer",
                    },
                  },
                  "type": "object",
                },
              },
            },
            "description": "Store unavailable (503 with Retry-After) or a server error",
          },
        },
        "security": Array [
          Object {
            "bearerAuth": Array [],
          },
        ],
        "summary": "End one of the user's sessions",
        "tags": Array [
          "token-auth",
        ],
      },
    },
  },
}
`
