--
-- PostgreSQL database dump
--

\restrict 9ZODOZrJD6mebZOlwtXUpV2DKJPTGxgmUaNPtcQWd3zJD5M7C86dBsqEiZ2zmNz

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: mlserver_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.mlserver_versions (
    id integer NOT NULL,
    model character varying(128) NOT NULL,
    key character varying(128) NOT NULL,
    version integer NOT NULL,
    status character varying(16) NOT NULL,
    created timestamp without time zone NOT NULL,
    started timestamp without time zone,
    finished timestamp without time zone,
    lease_expires timestamp without time zone,
    worker character varying(255),
    serializer character varying(64),
    sha256 character varying(64),
    signature character varying(160),
    size bigint,
    error text,
    metadata text NOT NULL,
    blob bytea
);


--
-- Name: mlserver_versions_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.mlserver_versions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: mlserver_versions_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.mlserver_versions_id_seq OWNED BY public.mlserver_versions.id;


--
-- Name: mlserver_versions id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_versions ALTER COLUMN id SET DEFAULT nextval('public.mlserver_versions_id_seq'::regclass);


--
-- Data for Name: mlserver_versions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.mlserver_versions VALUES (1, 'linreg', '21769fd223f946257c0484ceebf34a6c', 1, 'FINISHED', '2026-12-02 13:25:20.503546', '2026-12-02 13:25:20.503546', '2026-12-02 13:25:20.582803', NULL, 'vm:4026531836:12291:e995fe5e', 'joblib', 'b095d58c2525765ca9b818a7b2be0dd6ae36c5692a1bb31b11ccd0d07fd9b5b4', 'k1:fd63897262fed211b21d5bb90650c8605f8afe34bc478b6634a6484d19a603b4', 857, NULL, '{"rows":4,"n_features":2,"features":[{"name":"a","dtype":"float64"},{"name":"b","dtype":"float64"}],"targets":["t"],"libraries":{"python":"3.11.7","mlserver":"0.1.0","scikit-learn":"1.9.1","pandas":"3.1.1","numpy":"2.4.6","joblib":"1.6.0"},"kwargs":{"modkwargs":{},"algkwargs":{}},"training_seconds":0.070303,"serialized_bytes":857,"user":{}}', '\x8004955d010000000000008c1a736b6c6561726e2e6c696e6561725f6d6f64656c2e5f62617365948c104c696e65617252656772657373696f6e9493942981947d94288c0d6669745f696e7465726365707494888c06636f70795f5894888c03746f6c94473eb0c6f7a0b5ed8d8c066e5f6a6f6273944e8c08706f73697469766594898c11666561747572655f6e616d65735f696e5f948c136a6f626c69622e6e756d70795f7069636b6c65948c114e756d70794172726179577261707065729493942981947d94288c08737562636c617373948c056e756d7079948c076e6461727261799493948c057368617065944b0285948c056f72646572948c0143948c0564747970659468118c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f7494628c0a616c6c6f775f6d6d617094898c1b6e756d70795f61727261795f616c69676e6d656e745f6279746573944b10756280059592000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b02859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c0161948c016294657494622e9562000000000000008c0e6e5f66656174757265735f696e5f944b028c05636f65665f94680d2981947d94286810681368144b028594681668176818681a8c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b0074946268208868214b1075620fffffffffffffffffffffffffffffff388ee3388ee3f03f996559966559d63f9539000000000000008c0572616e6b5f944b028c0973696e67756c61725f94680d2981947d94286810681368144b028594681668176818682968208868214b1075620dffffffffffffffffffffffffffa842ed5f9b580a4083e2f53b8844fb3f9560000000000000008c0a696e746572636570745f948c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c617294939468294308906559966559d6bf94869452948c105f736b6c6561726e5f76657273696f6e948c05312e392e319475622e');
INSERT INTO public.mlserver_versions VALUES (2, 'linreg', '21769fd223f946257c0484ceebf34a6c', 2, 'FINISHED', '2026-12-02 13:25:20.608', '2026-12-02 13:25:20.608', '2026-12-02 13:25:20.622887', NULL, 'vm:4026531836:12291:e995fe5e', 'joblib', 'b095d58c2525765ca9b818a7b2be0dd6ae36c5692a1bb31b11ccd0d07fd9b5b4', 'k1:33c85c8240f6f94ae5e5d76895073b2fd9b4a0da7031bd6a75501aa66d40a65e', 857, NULL, '{"rows":4,"n_features":2,"features":[{"name":"a","dtype":"float64"},{"name":"b","dtype":"float64"}],"targets":["t"],"libraries":{"python":"3.11.7","mlserver":"0.1.0","scikit-learn":"1.9.1","pandas":"3.1.1","numpy":"2.4.6","joblib":"1.6.0"},"kwargs":{"modkwargs":{},"algkwargs":{}},"training_seconds":0.005769,"serialized_bytes":857,"user":{}}', '\x8004955d010000000000008c1a736b6c6561726e2e6c696e6561725f6d6f64656c2e5f62617365948c104c696e65617252656772657373696f6e9493942981947d94288c0d6669745f696e7465726365707494888c06636f70795f5894888c03746f6c94473eb0c6f7a0b5ed8d8c066e5f6a6f6273944e8c08706f73697469766594898c11666561747572655f6e616d65735f696e5f948c136a6f626c69622e6e756d70795f7069636b6c65948c114e756d70794172726179577261707065729493942981947d94288c08737562636c617373948c056e756d7079948c076e6461727261799493948c057368617065944b0285948c056f72646572948c0143948c0564747970659468118c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f7494628c0a616c6c6f775f6d6d617094898c1b6e756d70795f61727261795f616c69676e6d656e745f6279746573944b10756280059592000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b02859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c0161948c016294657494622e9562000000000000008c0e6e5f66656174757265735f696e5f944b028c05636f65665f94680d2981947d94286810681368144b028594681668176818681a8c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b0074946268208868214b1075620fffffffffffffffffffffffffffffff388ee3388ee3f03f996559966559d63f9539000000000000008c0572616e6b5f944b028c0973696e67756c61725f94680d2981947d94286810681368144b028594681668176818682968208868214b1075620dffffffffffffffffffffffffffa842ed5f9b580a4083e2f53b8844fb3f9560000000000000008c0a696e746572636570745f948c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c617294939468294308906559966559d6bf94869452948c105f736b6c6561726e5f76657273696f6e948c05312e392e319475622e');
INSERT INTO public.mlserver_versions VALUES (3, 'linreg', 'f754f5d0134399b179e1bae3e0c8471c', 1, 'FAILED', '2026-12-02 13:25:20.665931', '2026-12-02 13:25:20.665931', '2026-12-02 13:25:20.672388', NULL, 'vm:4026531836:12291:e995fe5e', NULL, NULL, NULL, NULL, 'TypeError: LinearRegression.fit() got an unexpected keyword argument ''nope''', '{}', NULL);


--
-- Name: mlserver_versions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.mlserver_versions_id_seq', 3, true);


--
-- Name: mlserver_versions mlserver_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_versions
    ADD CONSTRAINT mlserver_versions_pkey PRIMARY KEY (id);


--
-- Name: mlserver_versions_one_running; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX mlserver_versions_one_running ON public.mlserver_versions USING btree (model, key) WHERE ((status)::text = 'RUNNING'::text);


--
-- Name: versionrow_model_key_version; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX versionrow_model_key_version ON public.mlserver_versions USING btree (model, key, version);


--
-- PostgreSQL database dump complete
--

\unrestrict 9ZODOZrJD6mebZOlwtXUpV2DKJPTGxgmUaNPtcQWd3zJD5M7C86dBsqEiZ2zmNz

